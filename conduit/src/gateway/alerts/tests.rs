//! The alerts the events call for, and what a failed delivery keeps.

use super::*;

fn cert(change: &str) -> EventKind {
    EventKind::Certificate {
        change: change.to_owned(),
        name: "*".to_owned(),
        message: format!("{change} happened"),
    }
}

fn names(al: &Alerter) -> Vec<String> {
    al.active.keys().map(|k| k["alertname"].clone()).collect()
}

#[tokio::test]
async fn issuance_states_fire_and_resolve_each_other() {
    let certs = Arc::new(CertManager::new(
        Arc::new(
            conduit_ca::LocalCa::generate(Default::default(), time::OffsetDateTime::now_utc())
                .unwrap(),
        ),
        Arc::new(conduit_ca::CertResolver::new()),
        Arc::new(time::OffsetDateTime::now_utc),
    ));
    let tls = super::super::http_out::tls_client(b"").unwrap();
    let mut al = Alerter::new(
        &["http://127.0.0.1:9".to_owned()],
        tls,
        (Duration::from_secs(60), Duration::from_secs(3600)),
        certs,
        EventBus::new(),
    )
    .unwrap();
    fn apply(al: &mut Alerter, kind: EventKind) -> bool {
        let mut changed = false;
        for c in changes(&kind) {
            changed |= al.apply(c);
        }
        changed
    }
    assert!(apply(&mut al, cert("issuance_expiring")));
    assert!(
        !apply(&mut al, cert("issuance_expiring")),
        "the same alert again is no change"
    );
    assert!(apply(&mut al, cert("issuance_blocked")));
    assert!(apply(&mut al, cert("issuance_ready")));
    assert!(!apply(&mut al, cert("issued")), "nothing was firing for it");
    assert!(apply(
        &mut al,
        EventKind::Monitor {
            raised: true,
            target: "gpu-1".into(),
            subject: "GPU 0".into(),
            message: "hot".into(),
        }
    ));
    let verify = |success: bool| EventKind::Audit {
        action: "audit_verify".into(),
        success,
        user: "gateway".into(),
        message: "the chain".into(),
        sequence: None,
        timestamp: "2026-11-29T10:00:00Z".into(),
        details: serde_json::Map::new(),
    };
    assert!(apply(&mut al, verify(false)));
    assert_eq!(
        names(&al),
        ["ConduitAuditChainInvalid", "ConduitMonitorAlert"]
    );
    assert!(apply(&mut al, verify(true)));
    assert_eq!(names(&al), ["ConduitMonitorAlert"]);
    // Every resolved one waits for delivery, with its end.
    let resolved: Vec<&str> = al
        .resolved
        .iter()
        .map(|a| a.labels["alertname"].as_str())
        .collect();
    assert_eq!(
        resolved,
        [
            "ConduitIntermediateExpiring",
            "ConduitIssuanceBlocked",
            "ConduitAuditChainInvalid"
        ]
    );
    // Each ends when it was resolved: not before it started.
    for a in &al.resolved {
        let ends = a.ends_at.as_deref().unwrap_or_default();
        assert!(ends >= a.starts_at.as_str(), "{a:?}");
    }
    // Nothing listens on port 9: the delivery fails and keeps them for the next try.
    assert!(!al.deliver().await);
    assert_eq!(al.resolved.len(), 3);
}
