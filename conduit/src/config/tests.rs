//! The configuration's unit tests.

use super::values::byte_size;
use super::*;
use conduit_ca::KeyAlgorithm;
use conduit_proxy::{Balance, TlsVersions};

fn parse(text: &str) -> Result<(ConduitConfig, Vec<ConfigNotice>), ConfigError> {
    ConduitConfig::from_toml(text, Path::new("conduit.toml"))
}

#[test]
fn defaults_validate() {
    ConduitConfig::default().validate("defaults").unwrap();
    let (c, n) = parse("").unwrap();
    assert!(n.is_empty());
    assert_eq!(c.proxy.http_listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert!(c.proxy.allow_loopback_upstreams);
}

#[test]
fn unknown_keys_are_named_with_their_section() {
    for (text, key, line) in [
        ("bogus = 1\n", "bogus", 1),
        (
            "[proxy]\nlisten = []\nfirst_byte = \"1s\"\n",
            "proxy.first_byte",
            3,
        ),
        (
            "[monitor.thresholds]\ngpu_hot = 3\n",
            "monitor.thresholds.gpu_hot",
            2,
        ),
        ("[nosuch]\n", "nosuch", 1),
    ] {
        let e = parse(text).unwrap_err();
        match &e {
            ConfigError::Parse {
                line: l, key: k, ..
            } => {
                assert_eq!(*l, Some(line), "{e}");
                assert_eq!(k.as_deref(), Some(key), "{e}");
            }
            other => panic!("{other:?}"),
        }
        let msg = e.to_string();
        assert!(msg.starts_with("conduit.toml line"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
}

#[test]
fn wrong_values_name_the_key() {
    let e = parse("[proxy]\nidle_timeout = \"soon\"\n").unwrap_err();
    assert!(e.to_string().contains("key `proxy.idle_timeout`"), "{e}");
    let e = parse("[proxy]\nbalance = \"random\"\n").unwrap_err();
    assert!(e.to_string().contains("proxy.balance"), "{e}");
    let e = parse("[proxy]\nmax_body = \"12 parsecs\"\n").unwrap_err();
    assert!(e.to_string().contains("proxy.max_body"), "{e}");
}

#[test]
fn sizes_durations_and_enums() {
    let (c, _) = parse(
        "[proxy]\nmax_body = \"512MiB\"\nbalance = \"round_robin\"\ntls_versions = \"1.2\"\nhsts = \"365d\"\n[ca]\nkey_algorithm = \"ed25519\"\nleaf_lifetime = \"30d\"\n",
    )
    .unwrap();
    assert_eq!(c.proxy.max_body, Some(512 << 20));
    assert_eq!(c.proxy.balance, Balance::RoundRobin);
    assert_eq!(c.proxy.tls_versions, TlsVersions::Tls12And13);
    assert_eq!(c.proxy.hsts, Some(Duration::from_secs(365 * 86400)));
    assert_eq!(c.ca.key_algorithm, KeyAlgorithm::Ed25519);
    assert_eq!(c.ca_config().leaf_lifetime, Duration::from_secs(30 * 86400));
    let (c, _) = parse("[proxy]\nmax_body = \"unlimited\"\n").unwrap();
    assert_eq!(c.proxy.max_body, None);
    let (c, _) = parse("[proxy]\nmax_body = 1000\n").unwrap();
    assert_eq!(
        c.proxy_config("t").unwrap().limits.max_body_bytes,
        Some(1000)
    );
}

#[test]
fn old_flat_keys_still_work_with_a_notice() {
    let (c, n) = parse(
        "domain = \"lab\"\ndns_listen = [\"127.0.0.1:53\"]\nadmin_socket = \"/tmp/a.sock\"\nhealth_interval = \"2s\"\n",
    )
    .unwrap();
    assert_eq!(c.zone.as_str(), "lab");
    assert_eq!(c.dns.listen, vec!["127.0.0.1:53".parse().unwrap()]);
    assert_eq!(c.admin.socket.as_deref(), Some(Path::new("/tmp/a.sock")));
    assert_eq!(c.health.interval, Duration::from_secs(2));
    let keys: Vec<&str> = n.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(
        keys,
        ["domain", "dns_listen", "admin_socket", "health_interval"]
    );
    assert!(n[1].message.contains("[dns] listen"), "{}", n[1]);
}

#[test]
fn validation_names_the_key() {
    let (mut c, _) = parse("[ca]\nleaf_lifetime = \"2y\"\n").unwrap();
    let e = c.validate("conduit.toml").unwrap_err();
    assert!(e.to_string().contains("`ca.leaf_lifetime`"), "{e}");
    c.ca = CaSettings::default();
    c.admin.listen = Some("127.0.0.1:9999".parse().unwrap());
    let e = c.validate("conduit.toml").unwrap_err();
    assert!(e.to_string().contains("without a token"), "{e}");
    c.admin.token = Some(Secret::new("short"));
    let e = c.validate("conduit.toml").unwrap_err();
    assert!(e.to_string().contains("16 characters"), "{e}");
    c.admin.token = Some(Secret::new("0123456789abcdef0123"));
    c.validate("conduit.toml").unwrap();
    assert!(!c.admin_tls(), "plain on loopback by default");
    c.admin.listen = Some("10.8.0.1:9443".parse().unwrap());
    assert!(c.admin_tls(), "TLS off loopback by default");
    c.admin.tls = Some(false);
    let e = c.validate("conduit.toml").unwrap_err();
    assert!(
        e.to_string().contains("`admin.tls`") && e.to_string().contains("in clear"),
        "{e}"
    );
    c.admin.tls = None;
    let shown = c.to_toml().unwrap();
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    let (c, _) = parse("[proxy]\nallow_upstreams = [\"10.0.0.0/8\", \"not a name!\"]\n").unwrap();
    let e = c.validate("conduit.toml").unwrap_err();
    assert!(e.to_string().contains("proxy.allow_upstreams"), "{e}");
    let (c, _) = parse("[proxy]\nthreads = 2000\n").unwrap();
    let e = c.proxy_config("conduit.toml").unwrap_err();
    assert!(
        e.to_string().contains("`proxy.threads`") && e.to_string().contains("at most 1024"),
        "{e}"
    );
    let (c, _) = parse("[proxy]\nthreads = 4\n").unwrap();
    assert_eq!(c.proxy_config("conduit.toml").unwrap().threads, 4);
    assert_eq!(ConduitConfig::default().proxy.threads, 0, "one per core");
}

#[test]
fn shown_configuration_parses_back() {
    let c = ConduitConfig::default();
    let text = c.to_toml().unwrap();
    let (back, n) = parse(&text).unwrap();
    assert!(n.is_empty());
    assert_eq!(back.proxy.listen, c.proxy.listen);
    assert_eq!(back.health, c.health);
}

#[test]
fn the_original_env_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env.conduit");
    std::fs::write(
        &path,
        "# original\nCONDUIT_DOMAIN=lab\nexport CONDUIT_DNS_PORT=5300\nCONDUIT_UPSTREAM_DNS=\"10.0.0.2\"\nCONDUIT_CADDY_ADMIN=localhost:2019\nCONDUIT_ALLOWED_UPSTREAMS=10.0.0.0/8,gpu.lan\nOTHER=1\n",
    )
    .unwrap();
    let mut c = ConduitConfig::default();
    let n = c.apply_env_file(&path).unwrap();
    assert_eq!(c.zone.as_str(), "lab");
    assert_eq!(c.dns.listen, vec!["127.0.0.1:5300".parse().unwrap()]);
    assert_eq!(c.dns.forwarders, vec!["10.0.0.2:53".parse().unwrap()]);
    assert_eq!(c.proxy.allow_upstreams, ["10.0.0.0/8", "gpu.lan"]);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].key, "CONDUIT_CADDY_ADMIN");
    std::fs::write(&path, "CONDUIT_DNS_PORT=port\n").unwrap();
    let e = c.apply_env_file(&path).unwrap_err();
    assert!(e.to_string().contains("CONDUIT_DNS_PORT"), "{e}");
    assert!(
        ConduitConfig::default()
            .apply_env_file(&dir.path().join("none"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn byte_sizes() {
    assert_eq!(byte_size::parse("1GiB"), Ok(Some(1 << 30)));
    assert_eq!(byte_size::parse("10 MB"), Ok(Some(10_000_000)));
    assert_eq!(byte_size::parse("none"), Ok(None));
    assert!(
        byte_size::parse("99999999999TiB")
            .unwrap_err()
            .to_string()
            .contains("too large")
    );
    assert!(
        byte_size::parse("GiB")
            .unwrap_err()
            .to_string()
            .contains("not a size")
    );
}
