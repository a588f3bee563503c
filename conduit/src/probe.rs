//! Asking the running gateway as a client would: what its DNS server answers for a name,
//! and which certificate its HTTPS listener serves for it (trusting only our root). Used by
//! `conduit dns resolve` and `conduit certs inspect`; no external tool is needed.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

/// Why a probe got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The name is not a DNS name.
    #[error("{name:?} is not a DNS name: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// Why.
        reason: String,
    },
    /// No answer within the timeout (nothing listens there, or it is overloaded).
    #[error(
        "no answer from {server} within {timeout:?} (is `conduit serve` running and listening there?)"
    )]
    NoAnswer {
        /// The server asked.
        server: SocketAddr,
        /// How long we waited.
        timeout: Duration,
    },
    /// The answer could not be read.
    #[error("unreadable answer from {server}: {reason}")]
    BadAnswer {
        /// The server asked.
        server: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The root certificate cannot be read.
    #[error("cannot read the root certificate {}: {reason} (run `conduit setup`)", path.display())]
    Root {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The TLS connection failed: nothing listens, or the certificate is not one our root
    /// vouches for the name.
    #[error("TLS to {addr} as {name}: {source}")]
    Tls {
        /// The listener.
        addr: SocketAddr,
        /// The name asked for (SNI).
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// The served certificate could not be inspected.
    #[error(transparent)]
    Certificate(#[from] conduit_ca::CaError),
}

/// What a DNS server answered for one name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lookup {
    /// The response code (`NOERROR`, `NXDOMAIN`, `REFUSED`, …).
    pub code: String,
    /// The addresses in the answer section.
    pub addresses: Vec<IpAddr>,
}

/// Asks `server` (over UDP) for the `A` or `AAAA` records of `name`.
///
/// # Errors
/// [`ProbeError`].
pub async fn lookup(
    server: SocketAddr,
    name: &str,
    ipv6: bool,
    timeout: Duration,
) -> Result<Lookup, ProbeError> {
    let qname = Name::from_ascii(name.trim_end_matches('.').to_owned() + ".").map_err(|e| {
        ProbeError::BadName {
            name: name.to_owned(),
            reason: e.to_string(),
        }
    })?;
    let qtype = if ipv6 {
        RecordType::AAAA
    } else {
        RecordType::A
    };
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(qname, qtype));
    let bytes = query.to_vec().map_err(|e| ProbeError::BadName {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    let forwarder = conduit_dns::Forwarder::new(vec![server], timeout);
    let response = forwarder
        .forward(&bytes)
        .await
        .ok_or(ProbeError::NoAnswer { server, timeout })?;
    let message = Message::from_vec(&response).map_err(|e| ProbeError::BadAnswer {
        server,
        reason: e.to_string(),
    })?;
    let addresses = message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    let code = match message.metadata.response_code {
        ResponseCode::NoError => "NOERROR".to_owned(),
        ResponseCode::NXDomain => "NXDOMAIN".to_owned(),
        ResponseCode::Refused => "REFUSED".to_owned(),
        ResponseCode::ServFail => "SERVFAIL".to_owned(),
        other => other.to_string().to_uppercase(),
    };
    Ok(Lookup { code, addresses })
}

/// Connects to the HTTPS listener `addr` with SNI `name`, verifies the certificate against
/// the root in `root_pem` alone, and returns what the served leaf says.
///
/// # Errors
/// [`ProbeError`].
pub async fn served_certificate(
    addr: SocketAddr,
    name: &str,
    root_pem: &Path,
    timeout: Duration,
) -> Result<conduit_ca::CertInfo, ProbeError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};
    let root_err = |reason: String| ProbeError::Root {
        path: root_pem.to_owned(),
        reason,
    };
    let pem = std::fs::read(root_pem).map_err(|e| root_err(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| root_err(e.to_string()))?)
            .map_err(|e| root_err(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| root_err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls_err = |source: std::io::Error| ProbeError::Tls {
        addr,
        name: name.to_owned(),
        source,
    };
    let server_name = ServerName::try_from(name.to_owned()).map_err(|e| ProbeError::BadName {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
    };
    let stream = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| tls_err(std::io::ErrorKind::TimedOut.into()))?
        .map_err(tls_err)?;
    let (_, session) = stream.get_ref();
    let leaf = session
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| tls_err(std::io::Error::other("no certificate served")))?;
    Ok(conduit_ca::inspect_der(
        leaf,
        time::OffsetDateTime::now_utc(),
        &Default::default(),
    )?)
}

/// Where a client on this host reaches a listener: an unspecified bind address
/// (`0.0.0.0`, `::`) is asked on loopback.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}
