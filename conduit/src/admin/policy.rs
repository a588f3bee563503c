//! The access policy through the admin API: peers, grants, client certificates, checks.

use conduit_registry::access::{Grant, Peer};
use http::Method;

use super::{AdminClient, AdminError};
use crate::api::{
    AccessVerdict, GrantList, GrantRemove, PeerCertificate, PeerList, PeerRevoked, RequireCert,
};

/// `s` with every byte but unreserved ones percent-escaped (a query value).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl AdminClient {
    /// `GET /v1/peers`.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn peers(&self) -> Result<PeerList, AdminError> {
        self.call(Method::GET, "/v1/peers").await
    }

    /// `POST /v1/peers`: adds (or replaces) a peer, audited as this process's user.
    ///
    /// # Errors
    /// [`AdminError`] (`Refused` with 400 for an invalid peer).
    pub async fn add_peer(&self, peer: &Peer) -> Result<PeerList, AdminError> {
        self.call_with(Method::POST, "/v1/peers", Some(peer), None)
            .await
    }

    /// `DELETE /v1/peers/{name}`: removes a peer and revokes its client certificates.
    ///
    /// # Errors
    /// [`AdminError`] (`Refused` with 404 for no such peer, 409 while grants name it).
    pub async fn remove_peer(&self, name: &str) -> Result<PeerList, AdminError> {
        self.call(Method::DELETE, &format!("/v1/peers/{}", escape(name)))
            .await
    }

    /// `POST /v1/peers/{name}/cert`: a client certificate for the peer.
    ///
    /// # Errors
    /// [`AdminError`] (`Refused` with 404 for no such peer).
    pub async fn peer_cert(&self, name: &str) -> Result<PeerCertificate, AdminError> {
        self.call(Method::POST, &format!("/v1/peers/{}/cert", escape(name)))
            .await
    }

    /// `POST /v1/peers/{name}/revoke`: revokes every client certificate of the peer.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn revoke_peer(&self, name: &str) -> Result<PeerRevoked, AdminError> {
        self.call(Method::POST, &format!("/v1/peers/{}/revoke", escape(name)))
            .await
    }

    /// `GET /v1/grants[?service=S]`.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn grants(&self, service: Option<&str>) -> Result<GrantList, AdminError> {
        let path = match service {
            Some(s) => format!("/v1/grants?service={}", escape(s)),
            None => "/v1/grants".to_owned(),
        };
        self.call(Method::GET, &path).await
    }

    /// `POST /v1/grants`: adds a grant, audited as this process's user.
    ///
    /// # Errors
    /// [`AdminError`] (`Refused` with 400 for an invalid or duplicate grant).
    pub async fn add_grant(&self, grant: &Grant) -> Result<GrantList, AdminError> {
        self.call_with(Method::POST, "/v1/grants", Some(grant), None)
            .await
    }

    /// `DELETE /v1/grants`: removes the grants of `service` for `to`.
    ///
    /// # Errors
    /// [`AdminError`] (`Refused` with 404 when none matched).
    pub async fn remove_grant(&self, service: &str, to: &str) -> Result<GrantList, AdminError> {
        let body = GrantRemove {
            service: service.to_owned(),
            to: to.to_owned(),
        };
        self.call_with(Method::DELETE, "/v1/grants", Some(&body), None)
            .await
    }

    /// `POST /v1/access/require-cert`.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn require_cert(
        &self,
        service: &str,
        required: bool,
    ) -> Result<GrantList, AdminError> {
        let body = RequireCert {
            service: service.to_owned(),
            required,
        };
        self.call_with(Method::POST, "/v1/access/require-cert", Some(&body), None)
            .await
    }

    /// `GET /v1/access/check`: what the proxy would decide.
    ///
    /// # Errors
    /// [`AdminError`] (`Refused` with 400 for a malformed address or name).
    pub async fn access_check(
        &self,
        from: std::net::IpAddr,
        service: &str,
        method: &str,
        path: &str,
        cert: Option<&str>,
    ) -> Result<AccessVerdict, AdminError> {
        let mut q = format!(
            "/v1/access/check?from={}&service={}&method={}&path={}",
            escape(&from.to_string()),
            escape(service),
            escape(method),
            escape(path)
        );
        if let Some(c) = cert {
            q.push_str(&format!("&cert={}", escape(c)));
        }
        self.call(Method::GET, &q).await
    }
}
