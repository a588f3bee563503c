//! The contract every [`Registry`] implementation must meet, written once and run against
//! each backend in the workspace (in memory, files, the façade's audited registry): call
//! [`registry_contract`] on a fresh, empty registry from a test. Panics name the broken
//! promise.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::missing_panics_doc,
    reason = "a test suite: a failed assertion is a failed contract"
)]

use std::time::Duration;

use crate::{
    ChangeKind, HealthCheck, ListFilter, Precondition, Registry, RegistryError, Revision,
    ServiceName, ServiceRecord, Status,
};

fn name(s: &str) -> ServiceName {
    s.parse().unwrap()
}

fn rec(n: &str, up: &str) -> ServiceRecord {
    ServiceRecord::new(name(n), up.parse().unwrap())
}

/// Runs the whole contract against a fresh, empty registry.
pub async fn registry_contract(reg: &dyn Registry) {
    assert_eq!(reg.revision().await.unwrap(), Revision::ZERO);
    let mut all = reg.watch(Revision::ZERO);

    // register
    let g = reg
        .register(rec("grafana", "10.0.1.50:3000"))
        .await
        .unwrap();
    assert_eq!(
        (g.revision(), g.create_revision()),
        (Revision(1), Revision(1))
    );
    assert_eq!(g.status(), Status::Active);
    assert_eq!(g.domain().as_str(), "grafana.internal");
    assert_eq!(g.deregistered_at(), None);

    // duplicates by name and by domain
    let err = reg
        .register(rec("Grafana", "10.0.1.99:1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::AlreadyExists { name } if name.as_str() == "grafana"),
        "{err}"
    );
    let clash = rec("graf2", "10.0.1.51:3000").with_domain("grafana.internal".parse().unwrap());
    let err = reg.register(clash).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::DomainTaken { owner, .. } if owner.as_str() == "grafana"),
        "{err}"
    );
    // invalid records change nothing
    let err = reg
        .register(rec("empty", "10.0.0.1:1").with_endpoints(vec![]))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::InvalidRecord { .. }), "{err}");
    let err = reg
        .register(rec("hc", "10.0.0.1:1").with_health(HealthCheck::with_path("nope")))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::InvalidRecord { .. }), "{err}");
    assert_eq!(reg.revision().await.unwrap(), Revision(1));

    // get
    assert_eq!(
        reg.get(&name("grafana")).await.unwrap().as_deref(),
        Some(&*g)
    );
    assert_eq!(reg.get(&name("nope")).await.unwrap(), None);

    // update: explicit overwrite, compare-and-swap
    let moved = rec("grafana", "10.0.1.60:3000").with_health(HealthCheck::with_path("/api/health"));
    let g2 = reg
        .update(moved.clone(), Precondition::Overwrite)
        .await
        .unwrap();
    assert_eq!(
        (g2.revision(), g2.create_revision()),
        (Revision(2), Revision(1))
    );
    assert_eq!(g2.registered_at(), g.registered_at());
    assert_eq!(g2.endpoints()[0].to_string(), "http://10.0.1.60:3000");
    assert_eq!(g2.health().path, "/api/health");
    let err = reg
        .update(moved.clone(), Precondition::Revision(Revision(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Conflict {
                expected: Revision(1),
                actual: Revision(2),
                ..
            }
        ),
        "{err}"
    );
    let g3 = reg
        .update(moved, Precondition::Revision(Revision(2)))
        .await
        .unwrap();
    assert_eq!(g3.revision(), Revision(3));
    let err = reg
        .update(rec("ghost", "10.0.0.1:1"), Precondition::Overwrite)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");

    // a second service, then deregister the first
    reg.register(rec("ollama", "10.0.2.10:11434"))
        .await
        .unwrap();
    let d = reg.deregister(&name("grafana")).await.unwrap();
    assert_eq!((d.status(), d.revision()), (Status::Inactive, Revision(5)));
    assert_eq!(d.deregistered_at(), Some(d.updated_at()));
    let err = reg.deregister(&name("grafana")).await.unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
    let active: Vec<String> = reg
        .list(ListFilter::Active)
        .await
        .unwrap()
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    assert_eq!(active, ["ollama"]);
    assert_eq!(
        reg.get(&name("grafana")).await.unwrap().map(|r| r.status()),
        Some(Status::Inactive)
    );

    // the domain is free again; re-registering the name keeps the old record as history
    let again = reg
        .register(rec("grafana", "10.0.1.70:3000"))
        .await
        .unwrap();
    assert_eq!(again.create_revision(), Revision(6));
    let history: Vec<(String, Status)> = reg
        .list(ListFilter::All)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.name().to_string(), r.status()))
        .collect();
    assert_eq!(
        history,
        [
            ("grafana".into(), Status::Inactive),
            ("ollama".into(), Status::Active),
            ("grafana".into(), Status::Active)
        ]
    );
    assert_eq!(
        reg.get(&name("grafana")).await.unwrap().as_deref(),
        Some(&*again)
    );
    assert_eq!(reg.revision().await.unwrap(), Revision(6));

    // the change stream: every change, in order, with the right kind
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let ev = tokio::time::timeout(Duration::from_secs(5), all.next())
            .await
            .unwrap()
            .unwrap();
        seen.push((ev.revision.0, ev.kind, ev.record.name().to_string()));
    }
    use ChangeKind::*;
    assert_eq!(
        seen,
        [
            (1, Registered, "grafana".into()),
            (2, Updated, "grafana".into()),
            (3, Updated, "grafana".into()),
            (4, Registered, "ollama".into()),
            (5, Deregistered, "grafana".into()),
            (6, Registered, "grafana".into()),
        ]
    );
    assert_eq!(all.try_next(), None);

    // a watcher from "now" sees only later changes; one from zero replays current state
    let mut later = reg.watch(reg.revision().await.unwrap());
    assert_eq!(later.try_next(), None);
    reg.deregister(&name("ollama")).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), later.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ev.revision, ev.kind), (Revision(7), Deregistered));
    let mut replay = reg.watch(Revision(4));
    let revs: Vec<u64> = std::iter::from_fn(|| replay.try_next())
        .map(|e| e.revision.0)
        .collect();
    assert_eq!(revs, [5, 6, 7]);
}

/// Checks the access-policy part of the [`Registry`] contract: an empty policy at revision
/// 0, compare-and-swap, a refused policy stores nothing, watchers see each change.
///
/// # Panics
/// On any deviation (this is a test helper).
pub async fn policy_contract(registry: &dyn Registry) {
    use crate::access::{AccessPolicy, Grant, Label, Peer};

    let start = registry.access_policy().await.expect("read the policy");
    assert_eq!(start.revision, 0, "a new store holds revision 0");
    assert_eq!(start.policy, AccessPolicy::default());
    let mut watch = registry.watch_access_policy();

    let mut policy = AccessPolicy::default();
    let mut alice = Peer::new(Label::new("peer name", "alice").expect("label"));
    alice.addresses.push("10.8.0.2".parse().expect("address"));
    policy.peers.push(alice);
    policy.grants.push(Grant::new(
        "web".parse().expect("name"),
        "peer:alice".parse().expect("subject"),
    ));
    let stored = registry
        .set_access_policy(policy.clone(), 0)
        .await
        .expect("store a policy");
    assert_eq!(stored.revision, 1);
    assert_eq!(stored.policy, policy);
    assert_eq!(*registry.access_policy().await.expect("read"), *stored);

    match registry.set_access_policy(AccessPolicy::default(), 0).await {
        Err(RegistryError::PolicyConflict {
            expected: 0,
            actual: 1,
        }) => {}
        other => panic!("a stale revision must conflict, got {other:?}"),
    }
    let mut bad = policy.clone();
    bad.grants.push(Grant::new(
        "web".parse().expect("name"),
        "peer:mallory".parse().expect("subject"),
    ));
    match registry.set_access_policy(bad, 1).await {
        Err(RegistryError::InvalidPolicy(e)) => {
            assert!(e.to_string().contains("mallory"), "{e}");
        }
        other => panic!("an invalid policy must be refused, got {other:?}"),
    }
    assert_eq!(registry.access_policy().await.expect("read").revision, 1);

    tokio::time::timeout(Duration::from_secs(5), watch.wait_for(|p| p.revision == 1))
        .await
        .expect("the watcher saw the change in time")
        .expect("the registry is alive");
}
