//! The HTTPS listeners' TLS configuration ([`TlsBase`]): what the certificate resolver,
//! the versions and ALPN make, kept so that a variant asking for client certificates can be
//! built from the same parts.

use std::sync::Arc;

use rustls::server::ResolvesServerCert;

use crate::ProxyError;
use crate::config::{ProxyConfig, TlsVersions};

/// The HTTPS configuration and what built it: an mTLS variant is built from the same parts.
pub(crate) struct TlsBase {
    pub(crate) config: Arc<rustls::ServerConfig>,
    pub(crate) certs: Arc<dyn ResolvesServerCert>,
    pub(crate) versions: &'static [&'static rustls::SupportedProtocolVersion],
}

impl TlsBase {
    pub(crate) fn new(
        config: &ProxyConfig,
        certs: Arc<dyn ResolvesServerCert>,
    ) -> Result<Self, ProxyError> {
        let provider = Arc::new(crate::crypto::provider());
        static BOTH: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static TLS13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        let versions: &'static [&'static rustls::SupportedProtocolVersion] = match config.tls {
            TlsVersions::Tls12And13 => &BOTH,
            _ => &TLS13,
        };
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| ProxyError::Tls(Box::new(e)))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certs));
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Stateless resumption tickets, rotated by rustls every 6 hours.
        tls.ticketer =
            rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| ProxyError::Tls(Box::new(e)))?;
        Ok(Self {
            config: Arc::new(tls),
            certs,
            versions,
        })
    }
}
