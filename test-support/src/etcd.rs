//! Real etcd (Debian's `etcd-server`, 3.4) for the tests: one node or a cluster on loopback
//! ports of the test's own, data in a directory of the test's own, each member killed when
//! dropped and restartable on the same ports and data.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{Killed, free_port, ok, wait_until};

/// One entry of `etcdctl endpoint status -w json`.
#[derive(serde::Deserialize)]
struct EndpointStatus {
    #[serde(rename = "Endpoint")]
    endpoint: String,
    #[serde(rename = "Status")]
    status: MemberStatus,
}

#[derive(serde::Deserialize)]
struct MemberStatus {
    header: StatusHeader,
    leader: u64,
}

#[derive(serde::Deserialize)]
struct StatusHeader {
    revision: u64,
    member_id: u64,
}

/// One member: its name, ports, data directory and (while running) process.
#[derive(Debug)]
pub struct Member {
    /// The member's name in the cluster.
    pub name: String,
    /// Client port on 127.0.0.1.
    pub client: u16,
    /// Peer port on 127.0.0.1.
    pub peer: u16,
    dir: PathBuf,
    cluster: String,
    log: PathBuf,
    tls: Option<TlsFiles>,
    proc: Option<Killed>,
}

/// Certificates for etcd with TLS and client-certificate authentication: a CA, etcd's
/// serving certificate (for 127.0.0.1) and a client certificate, made with `openssl`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// etcd's certificate and key.
    pub server: (PathBuf, PathBuf),
    /// A client certificate and key the CA signed.
    pub client: (PathBuf, PathBuf),
}

impl TlsFiles {
    /// Makes them under `dir` (P-256 keys, valid one day).
    ///
    /// # Panics
    /// When openssl fails.
    pub fn make(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap_or_default();
        let p = |n: &str| dir.join(n);
        let run = |args: &[&str]| {
            ok(Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap_or_else(|e| std::process::Output {
                    status: std::os::unix::process::ExitStatusExt::from_raw(1 << 8),
                    stdout: Vec::new(),
                    stderr: e.to_string().into_bytes(),
                }))
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"][..],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=etcd test CA",
            ][..],
        ]
        .concat());
        for (name, ext) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth",
            ),
            ("client", "extendedKeyUsage=clientAuth"),
        ] {
            let (key, csr, pem, extfile) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            std::fs::write(p(&extfile), ext).unwrap_or_default();
            run(&[
                &["req"][..],
                &ec[..],
                &[
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                    "-subj",
                    &format!("/CN={name}"),
                ][..],
            ]
            .concat());
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "1",
                "-extfile",
                &extfile,
            ]);
        }
        Self {
            ca: p("ca.pem"),
            server: (p("server.pem"), p("server.key")),
            client: (p("client.pem"), p("client.key")),
        }
    }
}

/// A cluster of `n` members (1 for most tests).
#[derive(Debug)]
pub struct Etcd {
    /// The members, in start order.
    pub members: Vec<Member>,
}

impl Etcd {
    /// Starts an `n`-member cluster under `dir` and waits until it answers.
    ///
    /// # Panics
    /// When etcd cannot be started or does not become healthy in 30 s.
    pub fn start(dir: &Path, n: usize) -> Self {
        Self::start_with(dir, n, None)
    }

    /// As [`Etcd::start`], serving clients over TLS with client-certificate authentication
    /// when `tls` is given.
    ///
    /// # Panics
    /// When etcd cannot be started or does not become healthy in 30 s.
    pub fn start_with(dir: &Path, n: usize, tls: Option<&TlsFiles>) -> Self {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<Member> = ports
            .iter()
            .enumerate()
            .map(|(i, &(client, peer))| Member {
                name: format!("m{i}"),
                client,
                peer,
                dir: dir.join(format!("m{i}")),
                log: dir.join(format!("m{i}.log")),
                cluster: cluster.clone(),
                tls: tls.cloned(),
                proc: None,
            })
            .collect();
        for m in &mut members {
            m.spawn();
        }
        let etcd = Self { members };
        etcd.wait_healthy();
        etcd
    }

    /// `HOST:PORT,HOST:PORT…` of every member.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `etcd://…/prefix` for the registry.
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}/{prefix}", self.endpoints())
    }

    /// Waits until every running member reports healthy.
    ///
    /// # Panics
    /// After 30 s.
    pub fn wait_healthy(&self) {
        for m in self.members.iter().filter(|m| m.proc.is_some()) {
            wait_until(Duration::from_secs(30), || {
                etcdctl(m, &["endpoint", "health"]).status.success()
            });
        }
    }

    /// Runs `etcdctl` against the cluster and returns its output (it must succeed).
    pub fn ctl(&self, args: &[&str]) -> String {
        let running = self
            .members
            .iter()
            .find(|m| m.proc.is_some())
            .unwrap_or(&self.members[0]);
        ok(etcdctl(running, args))
    }

    /// The cluster's current revision.
    ///
    /// # Panics
    /// When etcdctl's answer has no revision.
    #[allow(clippy::expect_used, reason = "test support")]
    pub fn revision(&self) -> u64 {
        let out = self.ctl(&["endpoint", "status", "-w", "json"]);
        let status: Vec<EndpointStatus> = serde_json::from_str(&out).expect("etcdctl json");
        status.first().expect("one endpoint").status.header.revision
    }

    /// Compacts the history up to the current revision (and defragments nothing).
    pub fn compact(&self) {
        let rev = self.revision().to_string();
        self.ctl(&["compaction", "--physical", &rev]);
    }

    /// The index of the current leader.
    ///
    /// # Panics
    /// When no running member says it leads.
    #[allow(clippy::expect_used, clippy::panic, reason = "test support")]
    pub fn leader(&self) -> usize {
        let out = self.ctl(&["endpoint", "status", "--cluster", "-w", "json"]);
        let status: Vec<EndpointStatus> = serde_json::from_str(&out).expect("etcdctl json");
        for s in &status {
            if s.status.leader == s.status.header.member_id {
                let ep = &s.endpoint;
                return self
                    .members
                    .iter()
                    .position(|m| ep.ends_with(&format!(":{}", m.client)))
                    .expect("a known member");
            }
        }
        panic!("no leader in {out}");
    }
}

impl Member {
    /// Stops the member (SIGKILL).
    pub fn kill(&mut self) {
        self.proc = None;
    }

    /// Starts it again on the same ports and data.
    ///
    /// # Panics
    /// When etcd cannot be started.
    #[allow(clippy::expect_used, reason = "test support")]
    pub fn spawn(&mut self) {
        let url = |p: u16| format!("http://127.0.0.1:{p}");
        let client = format!("{}://127.0.0.1:{}", self.scheme(), self.client);
        let log = std::fs::File::create(&self.log).expect("etcd log");
        let mut etcd = Command::new("etcd");
        if let Some(t) = &self.tls {
            etcd.arg("--cert-file")
                .arg(&t.server.0)
                .arg("--key-file")
                .arg(&t.server.1)
                .arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(&t.ca);
        }
        let child = etcd
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &url(self.peer)])
            .args(["--initial-advertise-peer-urls", &url(self.peer)])
            .args(["--initial-cluster", &self.cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "conduit-test"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.proc = Some(Killed(child));
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Whether it runs.
    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }
}

fn etcdctl(m: &Member, args: &[&str]) -> std::process::Output {
    let mut c = Command::new("etcdctl");
    if let Some(t) = &m.tls {
        c.arg("--cacert")
            .arg(&t.ca)
            .arg("--cert")
            .arg(&t.client.0)
            .arg("--key")
            .arg(&t.client.1);
    }
    c.env("ETCDCTL_API", "3")
        .arg(format!(
            "--endpoints={}://127.0.0.1:{}",
            m.scheme(),
            m.client
        ))
        .arg("--command-timeout=3s")
        .args(args)
        .output()
        .unwrap_or_else(|e| std::process::Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(1 << 8),
            stdout: Vec::new(),
            stderr: e.to_string().into_bytes(),
        })
}
