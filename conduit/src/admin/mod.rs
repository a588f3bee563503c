//! The admin API: JSON over HTTP/1.1 on a unix socket (0600, the gateway's user only), and
//! optionally on a TCP address where every request must carry `Authorization: Bearer TOKEN`
//! (a TCP listener without a token is refused at start), over TLS with a certificate from
//! the gateway's CA unless it is on loopback. Every listener reads a request head within
//! 10 s and serves at most 64 connections at once (more are closed at once). Every body is one of the
//! [`api`](crate::api) types; `docs/admin-api.yaml` describes them.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /v1/status` | [`StatusReport`](crate::api::StatusReport): every active service, its upstreams' health, certificate expiry |
//! | `GET /metrics` | Prometheus text (proxy and DNS counters, upstream health, monitor samples) |
//! | `GET /v1/health` | [`Health`](crate::api::Health) while the gateway runs |
//! | `GET /v1/monitor` | [`MonitorSnapshot`](crate::api::MonitorSnapshot): the last monitor round |
//! | `GET /v1/dns` | [`DnsZone`](crate::api::DnsZone): the zone's records as served now, and the SOA serial |
//! | `GET /v1/audit?limit=N` | [`AuditTail`](crate::api::AuditTail): the last N audit records (default 50) |
//! | `POST /v1/certs/{name}/rotate` | [`CertificateInfo`](crate::api::CertificateInfo): a new key and leaf (audited `cert_rotate`) |
//! | `POST /v1/certs/{name}/revoke` | [`Revocation`](crate::api::Revocation): the leaf revoked (the new CRL served before the answer), a new one served (audited `cert_revoke`) |
//! | `GET`, `POST /v1/tokens`; `DELETE /v1/tokens/{name}` | [`TokenList`](crate::api::TokenList), [`TokenCreated`](crate::api::TokenCreated) (the secret, once): named tokens added and revoked (audited `token_add`, `token_revoke`) |
//! | `POST /v1/ca/intermediate` | [`IntermediateInstalled`](crate::api::IntermediateInstalled): an intermediate signed by the offline root installed (audited `ca_intermediate_install`) |
//! | `GET`, `POST /v1/audit/checkpoint` | the latest signed [`Checkpoint`](conduit_audit::Checkpoint) of the sealed chain; one of the head now |
//! | `GET`, `POST /v1/peers`; `DELETE /v1/peers/{name}` | [`PeerList`](crate::api::PeerList): the access policy's peers, added or removed (audited `peer_add`, `peer_remove`) |
//! | `POST /v1/peers/{name}/cert`, `/revoke` | [`PeerCertificate`](crate::api::PeerCertificate) (the key, once), [`PeerRevoked`](crate::api::PeerRevoked): a peer's client certificates |
//! | `GET`, `POST`, `DELETE /v1/grants` | [`GrantList`](crate::api::GrantList): grants added or removed (audited `grant_add`, `grant_remove`) |
//! | `POST /v1/access/require-cert`; `GET /v1/access/check` | a service's mTLS requirement; [`AccessVerdict`](crate::api::AccessVerdict): what the proxy decides for a request |
//! | `POST /v1/audit/witness` | [`WitnessReply`](crate::api::WitnessReply): another gateway's checkpoint witnessed (a fork or a rollback: 409, audited `audit_witness_alarm`) |
//!
//! Services change through the registry (`conduit register`), which the gateway follows;
//! every other method or path is refused (405 / 404) with an [`ApiError`](crate::api::ApiError), and a failed
//! action changes nothing and answers 409: the API fails closed.
//!
//! The server is part of the gateway (it answers from a
//! [`GatewayHandle`](crate::gateway::GatewayHandle)); [`AdminClient`] is the other end, used
//! by the `conduit` command.

mod client;
mod exchange;
mod policy;

pub use client::{AdminClient, AdminError};
pub(crate) use exchange::exchange;
