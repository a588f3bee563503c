//! The `api` types and `docs/admin-api.yaml` say the same thing: every type, with every
//! optional field set and with every one empty, validates against its schema (which refuses
//! fields it does not list and requires every field it lists).
#![cfg(feature = "gateway")]
#![allow(clippy::unwrap_used, reason = "test code")]

use conduit::api::*;
use conduit::monitor::{Sample, SampleKind};
use conduit::registry::Routing;
use conduit_test_support::openapi::Document;
use serde::Serialize;

fn doc() -> Document {
    Document::admin_api(env!("CARGO_MANIFEST_DIR")).unwrap()
}

fn check<T: Serialize>(doc: &Document, component: &str, value: &T) {
    let schema = doc.component(component).unwrap_or_else(|| {
        unreachable!("docs/admin-api.yaml has no schema {component}");
    });
    let json = serde_json::to_value(value).unwrap();
    if let Err(m) = doc.validate(schema, &json, "") {
        unreachable!("{component}: {m}\n{json:#}");
    }
}

fn service(full: bool) -> ServiceStatus {
    ServiceStatus {
        name: "grafana".into(),
        domain: "grafana.internal".into(),
        dns: full.then(|| {
            DnsCheck::Addresses(vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()])
        }),
        routing: if full {
            Routing::Proxied
        } else {
            Routing::Direct
        },
        tls: full,
        kind: if full {
            conduit::registry::Engine::Vllm
        } else {
            conduit::registry::Engine::Http
        },
        health_path: "/health".into(),
        healthy: full.then_some(true),
        upstreams: vec![UpstreamHealth {
            endpoint: "10.0.1.50:3000".into(),
            healthy: full.then_some(false),
            in_flight: full.then_some(3),
            requests: full.then_some(120),
            failures: full.then_some(2),
            latency_ms: full.then_some(12.5),
            engine: full.then(|| EngineState {
                kind: conduit::registry::Engine::Ollama,
                ready: true,
                reason: "2 model(s), 1 loaded".into(),
                models: vec![
                    ModelState {
                        id: "llama3:8b".into(),
                        loaded: true,
                        size_vram: Some(4_920_753_328),
                        expires_at: Some("2026-11-29T16:00:00Z".into()),
                    },
                    ModelState {
                        id: "qwen2:7b".into(),
                        loaded: false,
                        size_vram: None,
                        expires_at: None,
                    },
                ],
                waiting: Some(2.0),
                running: None,
                kv_cache_use: Some(0.25),
                load: 3.0,
                last_score: Some(-4.5),
                routed: 12,
            }),
        }],
        certificate_not_after: full.then(|| "2026-12-06T00:00:00Z".into()),
    }
}

#[test]
fn every_api_type_matches_its_schema() {
    let doc = doc();
    for full in [true, false] {
        check(&doc, "ServiceStatus", &service(full));
        check(
            &doc,
            "StatusReport",
            &StatusReport {
                services: vec![service(full)],
                dns_serial: full.then_some(7),
                ca: CaStatus {
                    issuance: if full {
                        IssuanceState::Expiring
                    } else {
                        IssuanceState::Ready
                    },
                    message: full.then(|| "the intermediate CA expires …".to_owned()),
                    root_key_present: full.then_some(false),
                    intermediate_not_after: full.then(|| "2026-12-01T00:00:00Z".to_owned()),
                    crl_url: full.then(|| "http://10.8.0.1:80/ca/crl.der".to_owned()),
                },
                access: AccessStatus {
                    default: conduit::registry::access::DefaultRule::Deny,
                    hide_names: full,
                    revision: 3,
                    peers: 2,
                    grants: 5,
                    require_cert: if full { vec!["vault".into()] } else { vec![] },
                    denied: 17,
                },
                balance: conduit::proxy::Balance::RoundRobin,
                dashboard: full.then(|| "https://conduit.internal/".into()),
                registry_store: full.then(|| RegistryStore {
                    url: "etcd://10.0.0.5:2379,10.0.0.6:2379/conduit".into(),
                    reachable: false,
                    since: "2026-11-29T21:00:00Z".into(),
                    reason: Some("connection refused".into()),
                    store_revision: 1234,
                }),
            },
        );
    }
    for outcome in [
        DnsOutcome::NoData,
        DnsOutcome::NxDomain,
        DnsOutcome::Refused,
    ] {
        let mut s = service(true);
        s.dns = Some(DnsCheck::Outcome(outcome));
        check(&doc, "ServiceStatus", &s);
    }
    check(&doc, "Health", &Health { ok: true });
    let cert = CertificateInfo {
        name: "grafana".into(),
        serial: "0a1b".into(),
        not_after: "2026-12-06T00:00:00Z".into(),
    };
    check(&doc, "CertificateInfo", &cert);
    check(
        &doc,
        "Revocation",
        &Revocation {
            name: "grafana".into(),
            revoked_serial: "09".into(),
            new: cert,
        },
    );
    let checkpoint = conduit::audit::Checkpoint {
        sequence: 9,
        head_hash: "ab".repeat(32),
        created_at: "2026-11-29T10:00:00.000000+00:00".into(),
        public_key: "cd".repeat(32),
        signature: "ef".repeat(64),
    };
    check(&doc, "Checkpoint", &checkpoint);
    let info = TokenInfo {
        name: "prometheus".into(),
        scope: conduit::tokens::Scope::Read,
        created: "2026-11-29T10:00:00Z".into(),
    };
    check(&doc, "TokenInfo", &info);
    check(&doc, "TokenList", &TokenList { tokens: vec![info] });
    check(
        &doc,
        "TokenAdd",
        &TokenAdd {
            name: "gw2".into(),
            scope: conduit::tokens::Scope::Witness,
        },
    );
    check(
        &doc,
        "TokenCreated",
        &TokenCreated {
            name: "ops".into(),
            scope: conduit::tokens::Scope::Admin,
            secret: "s3cr3t".into(),
        },
    );
    for anchor in [
        None,
        Some(Anchor {
            sequence: 3,
            head_hash: "01".repeat(32),
        }),
    ] {
        check(
            &doc,
            "WitnessRequest",
            &WitnessRequest {
                checkpoint: checkpoint.clone(),
                anchor,
            },
        );
    }
    for outcome in [WitnessOutcome::Accepted, WitnessOutcome::NeedAnchor] {
        check(
            &doc,
            "WitnessReply",
            &WitnessReply {
                outcome,
                sequence: 9,
            },
        );
    }
    check(
        &doc,
        "IntermediateInstall",
        &IntermediateInstall {
            pem: "-----BEGIN CERTIFICATE-----\n…".into(),
        },
    );
    check(
        &doc,
        "IntermediateInstalled",
        &IntermediateInstalled {
            not_after: "2027-03-01T00:00:00Z".into(),
            leaves_renewed: 3,
        },
    );
    for serial in [Some(3), None] {
        check(
            &doc,
            "DnsZone",
            &DnsZone {
                serial,
                records: vec![DnsRecord {
                    name: "grafana.internal.".into(),
                    ttl: 30,
                    rtype: "A".into(),
                    data: "127.0.0.1".into(),
                }],
            },
        );
    }
    let mut sample = Sample::new("local", SampleKind::Gpu);
    sample
        .metrics
        .insert("temperature_celsius".into(), 71.0.into());
    sample.metrics.insert("name".into(), "H200".into());
    sample.metrics.insert("running".into(), true.into());
    check(
        &doc,
        "MonitorSnapshot",
        &MonitorSnapshot {
            samples: vec![sample],
        },
    );
    let event = conduit::audited::event(
        conduit::audited::Action::ServiceRegister,
        true,
        "Registered grafana".to_owned(),
        "ops",
        serde_json::json!({"name": "grafana"}),
    )
    .unwrap();
    check(
        &doc,
        "AuditTail",
        &AuditTail {
            events: vec![AuditEntry::from(&event)],
            total: 1,
            cursor: "18c2f0a1b2c-41".into(),
            first: 0,
            sealed: Some(1),
        },
    );
    check(
        &doc,
        "ApiError",
        &ApiError::new("not_found", "no such endpoint: /x", false),
    );
    // the services' request and answers
    let mut spec = conduit::spec::ServiceSpec::new("grafana", vec!["10.0.1.50:3000".into()]);
    check(&doc, "ServiceSpec", &spec);
    spec.domain = Some("grafana.internal".into());
    spec.routing = Some(Routing::Proxied);
    spec.tls = Some(true);
    spec.health = Some(conduit::spec::HealthSpec::default());
    spec.kind = Some(conduit::registry::Engine::Vllm);
    check(&doc, "ServiceSpec", &spec);
    let rec = conduit::registry::ServiceRecord::new(
        "grafana".parse().unwrap(),
        "10.0.1.50:3000".parse().unwrap(),
    );
    let view = ServiceView::from(&rec);
    check(&doc, "ServiceView", &view);
    let config = conduit::config::ConduitConfig::default();
    let ssrf = config.ssrf_policy("test").unwrap();
    let mut spec = conduit::spec::ServiceSpec::new(
        "llm",
        vec!["10.0.1.50:8000".into(), "ollama=10.0.1.51:11434".into()],
    );
    spec.kind = Some(conduit::registry::Engine::Vllm);
    let view = ServiceView::from(&spec.to_record(&config, &ssrf, "test").unwrap());
    assert_eq!(
        view.upstreams,
        ["http://10.0.1.50:8000", "ollama=http://10.0.1.51:11434"]
    );
    check(&doc, "ServiceView", &view);
    let bus = conduit::events::EventBus::new();
    for kind in [
        conduit::events::EventKind::Service {
            change: "registered".into(),
            name: "grafana".into(),
            domain: "grafana.internal".into(),
            revision: 1,
        },
        conduit::events::EventKind::Health {
            service: "grafana".into(),
            upstream: "http://10.0.1.50:3000".into(),
            healthy: false,
            reason: "connection refused".into(),
        },
        conduit::events::EventKind::Audit {
            action: "service_register".into(),
            success: true,
            user: "root".into(),
            message: "Registered".into(),
            sequence: Some(7),
            timestamp: "2026-11-29T07:00:00Z".into(),
            details: serde_json::json!({"name": "grafana"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        },
    ] {
        bus.publish(kind);
    }
    for e in bus.replay(&conduit::events::Since::Before).unwrap() {
        check(&doc, "Event", &*e);
    }
    let (events, cursor) = bus.recent(|e| e.type_name() == "health", 10);
    assert_eq!(events.len(), 1, "only the health event");
    check(&doc, "EventList", &EventList { events, cursor });
    for (code, addresses) in [
        ("NOERROR", vec!["10.8.0.1".parse().unwrap()]),
        ("NXDOMAIN", vec![]),
    ] {
        check(
            &doc,
            "DnsLookup",
            &DnsLookup {
                server: "127.0.0.1:53".into(),
                name: "grafana.internal".into(),
                rtype: "A".into(),
                code: code.into(),
                addresses,
            },
        );
    }
    for full in [true, false] {
        check(
            &doc,
            "WitnessList",
            &WitnessList {
                witnesses: vec![WitnessStatus {
                    url: "https://10.8.0.2:8444/".into(),
                    accepted: full.then_some(41),
                    last_attempt: full.then(|| "2026-11-29T07:00:00Z".into()),
                    last_error: (!full).then(|| "refused: checkpoint 40 forks".into()),
                    refused: !full,
                }],
            },
        );
    }
    let ca_cert = CaCertView {
        subject: "O=Conduit, CN=Conduit Root CA".into(),
        not_before: "2026-11-29T00:00:00Z".into(),
        not_after: "2036-11-29T00:00:00Z".into(),
        sha256_fingerprint: "AB:CD".into(),
    };
    for full in [true, false] {
        check(
            &doc,
            "CertReport",
            &CertReport {
                ca: CaStatus {
                    issuance: IssuanceState::Ready,
                    message: None,
                    root_key_present: full.then_some(true),
                    intermediate_not_after: None,
                    crl_url: None,
                },
                root: full.then(|| ca_cert.clone()),
                intermediate: full.then(|| ca_cert.clone()),
                name_constraints: vec!["DNS: .internal".into(), "IP: 10.0.0.0/8".into()],
                leaves: vec![LeafView {
                    name: "grafana".into(),
                    serial: "0a".into(),
                    names: vec!["grafana.internal".into()],
                    not_before: "2026-11-29T00:00:00Z".into(),
                    not_after: "2026-12-06T00:00:00Z".into(),
                    life_left: 0.5,
                }],
                revoked: if full { vec!["09".into()] } else { vec![] },
            },
        );
    }
    check(&doc, "Event", &bus.resync("example".into()));
    check(
        &doc,
        "ServiceList",
        &ServiceList {
            services: vec![view],
            revision: 3,
        },
    );
}

#[test]
fn the_document_refuses_what_the_types_never_send() {
    let doc = doc();
    let schema = doc.component("ServiceStatus").unwrap();
    let mut v = serde_json::to_value(service(true)).unwrap();
    v["extra"] = serde_json::json!(1);
    assert_eq!(doc.validate(schema, &v, "").unwrap_err().at, "/extra");
    let mut v = serde_json::to_value(service(true)).unwrap();
    v.as_object_mut().unwrap().remove("healthy");
    assert!(
        doc.validate(schema, &v, "")
            .unwrap_err()
            .problem
            .contains("healthy")
    );
}

#[test]
fn access_types_match_their_schemas() {
    use conduit::registry::access::{DefaultRule, Grant, Label, Peer, PeerCert};
    let doc = doc();
    for full in [true, false] {
        let mut peer = Peer::new(Label::new("peer name", "alice").unwrap());
        let mut grant = Grant::new("web".parse().unwrap(), "peer:alice".parse().unwrap());
        if full {
            peer.addresses.push("10.8.0.2".parse().unwrap());
            peer.tags.push(Label::new("tag", "ops").unwrap());
            peer.wg_key = Some("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".into());
            peer.certs
                .push(PeerCert::new("0a1b", "2026-12-06T00:00:00Z"));
            grant = grant.methods(["GET"]).path("/v1/");
        }
        check(&doc, "Peer", &peer);
        check(
            &doc,
            "PeerList",
            &PeerList {
                revision: 3,
                peers: vec![peer],
            },
        );
        check(&doc, "Grant", &grant);
        check(
            &doc,
            "GrantList",
            &GrantList {
                revision: 3,
                default: if full {
                    DefaultRule::Deny
                } else {
                    DefaultRule::Open
                },
                hide_names: full,
                grants: vec![grant],
                require_cert: if full { vec!["vault".into()] } else { vec![] },
            },
        );
    }
    check(
        &doc,
        "GrantRemove",
        &GrantRemove {
            service: "web".into(),
            to: "tag:ops".into(),
        },
    );
    check(
        &doc,
        "RequireCert",
        &RequireCert {
            service: "vault".into(),
            required: true,
        },
    );
    check(
        &doc,
        "AccessVerdict",
        &AccessVerdict {
            allowed: false,
            decided_by: "default".into(),
            reason: "no grant names web; [access] default = \"deny\"".into(),
            revision: 4,
        },
    );
    check(
        &doc,
        "PeerCertificate",
        &PeerCertificate {
            peer: "alice".into(),
            chain_pem: "-----BEGIN CERTIFICATE-----".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----".into(),
            root_pem: "-----BEGIN CERTIFICATE-----".into(),
            serial: "0a1b".into(),
            not_after: "2026-12-06T00:00:00Z".into(),
        },
    );
    check(
        &doc,
        "PeerRevoked",
        &PeerRevoked {
            peer: "alice".into(),
            serials: vec!["0a1b".into()],
        },
    );
}
