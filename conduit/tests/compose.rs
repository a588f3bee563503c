//! A gateway composed of its own parts, behind the subsystems' traits, with no state
//! directory: an in-memory registry, a CA in a temporary directory, an in-memory audit sink.
//! It registers, serves DNS and HTTPS, and audits.
#![cfg(feature = "gateway")]
#![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use conduit::audit::{AuditError, AuditEvent, AuditSink, Receipt};
use conduit::ca::{CaConfig, LocalCa, LocalIssuer};
use conduit::config::ConduitConfig;
use conduit::gateway::{Gateway, GatewayConfig, GatewayError};
use conduit::monitor::{MetricSource, MonitorError, Sample, SampleKind};
use conduit::registry::{InMemoryRegistry, Registry, ServiceRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Audit events kept in memory.
#[derive(Debug, Default)]
struct MemorySink(Mutex<Vec<AuditEvent>>);

#[async_trait::async_trait]
impl AuditSink for MemorySink {
    async fn append(&self, event: AuditEvent) -> Result<Receipt, AuditError> {
        self.0.lock().unwrap().push(event);
        Ok(Receipt::default())
    }

    async fn history(&self) -> Result<Option<Vec<AuditEvent>>, AuditError> {
        Ok(Some(self.0.lock().unwrap().clone()))
    }
}

impl MemorySink {
    fn actions(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.action().to_owned())
            .collect()
    }
}

/// A metric source of the embedder's own: one host sample with one metric.
#[derive(Debug)]
struct FixedSource;

#[async_trait::async_trait]
impl MetricSource for FixedSource {
    fn name(&self) -> &str {
        "fixed"
    }

    async fn sample(&self) -> Result<Vec<Sample>, MonitorError> {
        Ok(vec![
            Sample::new("rack-7", SampleKind::Host).with("load1", 0.25),
        ])
    }
}

/// An upstream that answers every request with 200 "composed".
async fn upstream() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\ncomposed\n")
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "current_thread")]
async fn a_gateway_of_in_memory_parts_registers_serves_and_audits() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(
        tmp.path(),
        CaConfig::default(),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let root = tmp.path().join("root-for-clients.pem");
    std::fs::write(&root, ca.root_pem()).unwrap();
    // The CA's files stay where it was created; the issuer saves nothing.
    let issuer = Arc::new(LocalIssuer::new(
        ca,
        None,
        Arc::new(time::OffsetDateTime::now_utc),
    ));
    let registry = Arc::new(InMemoryRegistry::new());
    let sink = Arc::new(MemorySink::default());
    let mut settings = ConduitConfig::default();
    settings.dns.listen = vec!["127.0.0.1:0".parse().unwrap()];
    settings.proxy.listen = vec!["127.0.0.1:0".parse().unwrap()];
    settings.proxy.http_listen = Vec::new();
    settings.monitor.interval = Duration::from_secs(1);
    settings.health.interval = Duration::from_millis(300);
    settings.health.timeout = Duration::from_millis(300);
    let config = GatewayConfig::without_state(settings, "test");
    let gateway = Gateway::builder(config)
        .registry(registry.clone())
        .issuer(issuer)
        .audit(sink.clone())
        .metric_source(Arc::new(FixedSource))
        .start()
        .await
        .unwrap();
    assert!(
        gateway.admin_socket().is_none(),
        "no state directory, no socket"
    );
    let (dns, https) = (gateway.dns_addrs()[0], gateway.https_addrs()[0]);
    let handle = gateway.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(gateway.run(async {
        let _ = stopped.await;
    }));

    let up = upstream().await;
    let mut health = conduit::registry::HealthCheck::with_path("/");
    health.interval = Duration::from_millis(300);
    health.timeout = Duration::from_millis(300);
    let rec = ServiceRecord::new(
        "svc".parse().unwrap(),
        conduit::registry::Endpoint::from_socket_addr(up).unwrap(),
    )
    .with_health(health);
    registry.register(rec).await.unwrap();

    // DNS answers the gateway's address, HTTPS serves a certificate from the CA we gave it,
    // and the upstream's answer comes back through it.
    let mut served = false;
    for _ in 0..200 {
        let dns_ok = conduit::probe::lookup(dns, "svc.internal", false, Duration::from_secs(1))
            .await
            .is_ok_and(|l| l.addresses == ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
        let cert = conduit::probe::served_certificate(
            https,
            "svc.internal",
            &root,
            Duration::from_secs(1),
        )
        .await;
        let healthy = handle
            .status()
            .await
            .unwrap()
            .services
            .first()
            .is_some_and(|s| s.healthy == Some(true));
        let sampled = handle.samples().iter().any(|s| s.target == "rack-7");
        if dns_ok && cert.is_ok_and(|c| c.dns_names == ["svc.internal"]) && healthy && sampled {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        served,
        "served by name over DNS and HTTPS, the embedder's metric source polled"
    );
    let actions = sink.actions();
    assert!(actions.iter().any(|a| a == "cert_issue"), "{actions:?}");
    assert!(actions.iter().any(|a| a == "health_change"), "{actions:?}");
    // Its audit log is the sink's, not a file: the handle says so instead of guessing.
    assert!(matches!(
        handle.audit_tail(10).await,
        Err(GatewayError::Unavailable { .. })
    ));
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_part_missing_with_no_state_directory_is_named() {
    let config = GatewayConfig::without_state(ConduitConfig::default(), "test");
    let e = Gateway::builder(config)
        .registry(Arc::new(InMemoryRegistry::new()))
        .start()
        .await
        .unwrap_err();
    assert!(matches!(e, GatewayError::Config(_)), "{e}");
    assert!(e.to_string().contains("certificate issuer"), "{e}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_embedders_parts_meet_their_contracts() {
    conduit_audit::testing::sink_contract(Arc::new(MemorySink::default())).await;
    conduit_monitor::testing::source_contract(&FixedSource).await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_audited_registry_meets_the_registry_contract() {
    let sink = Arc::new(MemorySink::default());
    let audited = conduit::audited::AuditedRegistry::new(InMemoryRegistry::new(), sink, "contract");
    conduit_registry::testing::registry_contract(&audited).await;
}
