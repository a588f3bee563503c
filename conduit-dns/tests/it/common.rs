//! Shared fixtures: a server on 127.0.0.1 with an in-memory registry, and command helpers.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::Arc;

use conduit_dns::{DnsHandle, DnsServer, ZoneConfig};
use conduit_registry::{
    DomainName, Endpoint, InMemoryRegistry, Registry, Routing, ServiceName, ServiceRecord,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) const GATEWAY_V4: &str = "10.0.0.1";
pub(crate) const GATEWAY_V6: &str = "fd00::1";

/// A proxied service `name.internal` with one upstream.
pub(crate) fn proxied(name: &str, upstream: &str) -> ServiceRecord {
    ServiceRecord::new(
        ServiceName::new(name).unwrap(),
        upstream.parse::<Endpoint>().unwrap(),
    )
    .in_zone(&DomainName::internal())
    .unwrap()
}

/// A direct (`--no-proxy`) service with these upstreams.
pub(crate) fn direct(name: &str, upstreams: &[&str]) -> ServiceRecord {
    proxied(name, upstreams[0])
        .with_endpoints(upstreams.iter().map(|u| u.parse().unwrap()).collect())
        .with_routing(Routing::Direct)
}

pub(crate) fn config() -> ZoneConfig {
    ZoneConfig::default()
        .with_advertise(vec![
            GATEWAY_V4.parse::<IpAddr>().unwrap(),
            GATEWAY_V6.parse::<IpAddr>().unwrap(),
        ])
        .with_reverse_zones(vec!["10.in-addr.arpa".parse().unwrap()])
        .with_https_port(8443)
}

pub(crate) struct Server {
    pub(crate) registry: Arc<InMemoryRegistry>,
    pub(crate) addr: SocketAddr,
    pub(crate) handle: DnsHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    pub(crate) async fn start(config: ZoneConfig, forwarders: Vec<SocketAddr>) -> Self {
        let registry = Arc::new(InMemoryRegistry::new());
        let server = DnsServer::builder()
            .registry(registry.clone())
            .zones(config)
            .forwarders(forwarders)
            .forward_timeout(std::time::Duration::from_millis(300))
            .listen("127.0.0.1:0".parse().unwrap())
            .bind()
            .await
            .unwrap();
        let addr = server.udp_addrs()[0];
        assert_eq!(server.tcp_addrs(), vec![addr]);
        let handle = server.handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            registry,
            addr,
            handle,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Registers and waits until the zone has been rebuilt with it.
    pub(crate) async fn register(&self, record: ServiceRecord) {
        let before = self.handle.stats().rebuilds;
        self.registry.register(record).await.unwrap();
        self.wait_rebuild(before).await;
    }

    pub(crate) async fn wait_rebuild(&self, before: u64) {
        for _ in 0..500 {
            if self.handle.stats().rebuilds > before {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        panic!("the zone was not rebuilt within 1 s");
    }

    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

/// Whether a real peer is installed; under CI a missing one fails the test.
pub(crate) use conduit_test_support::have;

/// A response as `dig` printed it, reduced to what the tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dig {
    pub(crate) status: String,
    pub(crate) flags: Vec<String>,
    pub(crate) answer: Vec<String>,
    pub(crate) authority: Vec<String>,
    pub(crate) additional: Vec<String>,
    pub(crate) edns: Option<String>,
    pub(crate) raw: String,
}

impl Dig {
    pub(crate) fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// `dig @addr -p port` with no retries, a 2 s timeout and no cookie.
fn dig_command(addr: SocketAddr) -> Command {
    let mut cmd = Command::new("dig");
    cmd.arg(format!("@{}", addr.ip())).args([
        "-p",
        &addr.port().to_string(),
        "+tries=1",
        "+time=2",
        "+nocookie",
    ]);
    cmd
}

/// Runs `dig @addr -p port ARGS…` (no retries, 2 s timeout) and parses its output.
pub(crate) fn dig(addr: SocketAddr, args: &[&str]) -> Dig {
    let out = dig_command(addr).args(args).output().unwrap();
    parse_dig(&String::from_utf8_lossy(&out.stdout))
}

pub(crate) fn parse_dig(raw: &str) -> Dig {
    let mut d = Dig {
        status: String::new(),
        flags: Vec::new(),
        answer: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
        edns: None,
        raw: raw.to_owned(),
    };
    let mut section = "";
    for line in raw.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            d.status = rest.split(',').next().unwrap_or_default().to_owned();
        } else if let Some(rest) = line.strip_prefix(";; flags: ") {
            let flags = rest.split(';').next().unwrap_or_default();
            d.flags = flags.split_whitespace().map(str::to_owned).collect();
        } else if let Some(rest) = line.strip_prefix("; EDNS: ") {
            d.edns = Some(rest.to_owned());
        } else if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
        } else if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
        } else if line.starts_with(";; ADDITIONAL SECTION") {
            section = "additional";
        } else if line.is_empty() || line.starts_with(';') {
            if line.is_empty() {
                section = "";
            }
        } else {
            let rr = line.split_whitespace().collect::<Vec<_>>().join(" ");
            match section {
                "answer" => d.answer.push(rr),
                "authority" => d.authority.push(rr),
                "additional" => d.additional.push(rr),
                _ => {}
            }
        }
    }
    d.answer.sort();
    d.authority.sort();
    d.additional.sort();
    d
}

/// Runs many `dig` queries in one process (`dig -f`), one per argument list, in order.
pub(crate) fn dig_batch(addr: SocketAddr, queries: &[Vec<&str>]) -> Vec<Dig> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("queries");
    let text: String = queries
        .iter()
        .map(|q| format!("{}\n", q.join(" ")))
        .collect();
    std::fs::write(&file, text).unwrap();
    let out = dig_command(addr).arg("-f").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<Dig> = stdout.split("; <<>> DiG").skip(1).map(parse_dig).collect();
    assert_eq!(results.len(), queries.len(), "{stdout}");
    results
}
