//! SshSource against a real sshd on 127.0.0.1 with generated keys (see
//! ../shared/notes/sshd-loopback.md).

use std::process::Command;

use crate::{have, run};

struct Sshd(std::path::PathBuf);

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.0.join("sshd.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[cfg(feature = "ssh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_host_over_ssh_with_checked_host_keys() {
    use conduit_monitor::{MetricSource, RemoteTarget, SampleKind, SshSource};

    if !have("ssh") || !have("ssh-keygen") || !std::path::Path::new("/usr/sbin/sshd").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install openssh-server"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |f: &str| d.join(f).to_str().unwrap().to_owned();
    std::fs::create_dir_all("/run/sshd").unwrap();
    run(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", &p("hostkey")],
    );
    run(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", &p("userkey")],
    );
    std::fs::copy(p("userkey.pub"), p("authorized_keys")).unwrap();
    let port = free_port();
    std::fs::write(
        p("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPasswordAuthentication no\nPidFile {}\nStrictModes no\nUsePAM no\n",
            p("hostkey"), p("authorized_keys"), p("sshd.pid")
        ),
    )
    .unwrap();
    run(
        "/usr/sbin/sshd",
        &["-f", &p("sshd_config"), "-E", &p("sshd.log")],
    );
    let _sshd = Sshd(d.to_owned());
    let host_pub = std::fs::read_to_string(p("hostkey.pub")).unwrap();
    let key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
    std::fs::write(
        p("known_hosts"),
        format!("[127.0.0.1]:{port} {} {}\n", key[0], key[1]),
    )
    .unwrap();

    let target = RemoteTarget::parse("root@127.0.0.1:gpu-server").unwrap();
    let source = SshSource::new(target.clone())
        .with_port(port)
        .with_keyfile(p("userkey"))
        .with_known_hosts(p("known_hosts"));
    let mut samples = Vec::new();
    for _ in 0..50 {
        match source.sample().await {
            Ok(s) => {
                samples = s;
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    conduit_monitor::testing::source_contract(&source).await;
    let host = samples
        .iter()
        .find(|s| s.kind == SampleKind::Host)
        .expect("a host sample over ssh");
    assert_eq!(host.target, "gpu-server");
    // The remote is this machine: the same memory total as read locally.
    let local = conduit_monitor::internal::proc::parse_meminfo(
        &std::fs::read_to_string("/proc/meminfo").unwrap(),
    );
    assert_eq!(
        host.number("memory_total_bytes"),
        local.total.map(|t| t as f64)
    );
    assert!(host.number("cpu_cores").unwrap() >= 1.0);
    assert!(
        samples
            .iter()
            .any(|s| s.kind == SampleKind::Disk && s.text("mount") == Some("/")),
        "{samples:?}"
    );
    // A second sample reuses the connection and has a CPU delta.
    let again = source.sample().await.unwrap();
    assert!(again.iter().any(|s| s.number("cpu_usage_ratio").is_some()));

    // A host key that does not match: refused, never trusted silently.
    let other = d.join("other_known_hosts");
    run(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", &p("otherkey")],
    );
    let other_pub = std::fs::read_to_string(p("otherkey.pub")).unwrap();
    let k: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    std::fs::write(&other, format!("[127.0.0.1]:{port} {} {}\n", k[0], k[1])).unwrap();
    let wrong = SshSource::new(target.clone())
        .with_port(port)
        .with_keyfile(p("userkey"))
        .with_known_hosts(&other);
    let e = wrong.sample().await.unwrap_err().to_string();
    assert!(e.contains("ssh:gpu-server"), "{e}");
    // An unknown host: refused too.
    std::fs::write(&other, "").unwrap();
    let unknown = SshSource::new(target)
        .with_port(port)
        .with_keyfile(p("userkey"))
        .with_known_hosts(&other);
    let e = unknown.sample().await.unwrap_err().to_string();
    assert!(e.contains("ssh:gpu-server"), "{e}");
}
