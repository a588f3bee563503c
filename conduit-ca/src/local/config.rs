//! What a [`LocalCa`](super::LocalCa) is created with: zones, IP ranges, lifetimes, key
//! algorithm.

use std::net::IpAddr;
use std::time::Duration;

/// The key type of a certificate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256: what every browser accepts (the default).
    #[default]
    EcdsaP256,
    /// Ed25519: for service-to-service TLS only (browsers reject Ed25519 server certificates).
    Ed25519,
}

impl KeyAlgorithm {
    pub(super) fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

/// Longest leaf lifetime accepted.
pub const MAX_LEAF_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// Settings of a [`LocalCa`](super::LocalCa).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CaConfig {
    /// Zones the CA may certify (name constraints): default `internal`.
    pub zones: Vec<String>,
    /// IP ranges the CA may certify (name constraints), as (network, prefix length).
    pub ip_ranges: Vec<(IpAddr, u8)>,
    /// Organisation written into the CA subjects.
    pub organization: String,
    /// Root lifetime (default 10 years).
    pub root_lifetime: Duration,
    /// Intermediate lifetime (default 7 days; renewed automatically).
    pub intermediate_lifetime: Duration,
    /// Default leaf lifetime (default 7 days, at most a year).
    pub leaf_lifetime: Duration,
    /// Key type of the CA certificates and default key type of leaves.
    pub key_algorithm: KeyAlgorithm,
    /// A CRL distribution point URL written into every leaf (for example the gateway's
    /// `http://ca.internal/crl`); `None` leaves it out.
    pub crl_url: Option<String>,
    /// The URL where the root's CRL is served, written into intermediates as their CRL
    /// distribution point (the gateway's `http://ADDRESS:PORT/ca/root-crl.der`); `None`
    /// leaves it out.
    pub root_crl_url: Option<String>,
}

impl CaConfig {
    /// Whether `ip` is inside the IP ranges this CA may certify.
    pub fn permits_ip(&self, ip: IpAddr) -> bool {
        self.ip_ranges
            .iter()
            .any(|(net, len)| super::constraints::in_range(ip, *net, *len))
    }
}

impl Default for CaConfig {
    fn default() -> Self {
        Self {
            zones: vec!["internal".to_owned()],
            ip_ranges: vec![
                (IpAddr::from([10, 0, 0, 0]), 8),
                (IpAddr::from([172, 16, 0, 0]), 12),
                (IpAddr::from([192, 168, 0, 0]), 16),
                (IpAddr::from([127, 0, 0, 0]), 8),
                (IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 0]), 8),
                (IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]), 128),
            ],
            organization: "Conduit".to_owned(),
            root_lifetime: Duration::from_secs(10 * 365 * 24 * 3600),
            intermediate_lifetime: Duration::from_secs(7 * 24 * 3600),
            leaf_lifetime: Duration::from_secs(7 * 24 * 3600),
            key_algorithm: KeyAlgorithm::EcdsaP256,
            crl_url: None,
            root_crl_url: None,
        }
    }
}
