//! The SSRF guard: which upstream addresses a registration may point the proxy at.
//!
//! An admin API that lets someone register `http://169.254.169.254/` as an upstream turns the
//! proxy into a way to read cloud credentials. The guard refuses link-local and metadata
//! addresses by default, loopback unless allowed, and can restrict upstreams to an
//! allow-list of networks and names. It is applied when routes are built and again at
//! connect time to every address a name resolves to (DNS rebinding).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use conduit_registry::{DomainName, Endpoint, Host};
use hyper_util::client::legacy::connect::dns::Name;

use crate::ProxyError;
pub(crate) use conduit_registry::canonical_ip as canonical;
pub use conduit_registry::{Cidr, CidrError};

/// Names of cloud metadata services, refused unless allow-listed.
const METADATA_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.internal",
];

/// Metadata addresses outside the link-local ranges.
fn is_metadata_ip(ip: IpAddr) -> bool {
    match ip {
        // Alibaba Cloud, Oracle Cloud (192.0.0.192), AWS IPv6 IMDS (fd00:ec2::254)
        IpAddr::V4(v4) => {
            v4 == Ipv4Addr::new(100, 100, 100, 200) || v4 == Ipv4Addr::new(192, 0, 0, 192)
        }
        IpAddr::V6(v6) => v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Which upstreams may be registered through an untrusted path (the admin API).
///
/// ```
/// use conduit_proxy::{ProxyError, SsrfPolicy};
/// let policy = SsrfPolicy::default();
/// policy.check_endpoint(&"10.0.1.50:3000".parse()?)?;                 // allowed
/// let why = |r: Result<(), ProxyError>| match r {
///     Err(ProxyError::Forbidden { reason, .. }) => reason,
///     other => format!("{other:?}"),
/// };
/// assert_eq!(why(policy.check_endpoint(&"169.254.169.254:80".parse()?)), "a cloud metadata address");
/// assert!(why(policy.check_endpoint(&"127.0.0.1:8080".parse()?)).starts_with("loopback"));
/// let policy = policy.allow_loopback(true);
/// policy.check_endpoint(&"127.0.0.1:8080".parse()?)?;                 // now allowed
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SsrfPolicy {
    allow_loopback: bool,
    allow_link_local: bool,
    networks: Vec<Cidr>,
    names: Vec<DomainName>,
}

impl SsrfPolicy {
    /// Allow loopback upstreams (`127.0.0.0/8`, `::1`); refused by default.
    #[must_use]
    pub fn allow_loopback(mut self, yes: bool) -> Self {
        self.allow_loopback = yes;
        self
    }

    /// Allow link-local upstreams (`169.254.0.0/16`, `fe80::/10`), metadata addresses
    /// excepted; refused by default.
    #[must_use]
    pub fn allow_link_local(mut self, yes: bool) -> Self {
        self.allow_link_local = yes;
        self
    }

    /// Only these networks (and the names given to [`SsrfPolicy::allow_names`]) are allowed;
    /// an address listed here is allowed even when it is loopback, link-local or metadata.
    #[must_use]
    pub fn allow_networks(mut self, networks: impl IntoIterator<Item = Cidr>) -> Self {
        self.networks.extend(networks);
        self
    }

    /// Host names allowed as upstreams (the name and the names below it). With an
    /// allow-list, other names are refused; their addresses are still checked at connect time.
    #[must_use]
    pub fn allow_names(mut self, names: impl IntoIterator<Item = DomainName>) -> Self {
        self.names.extend(names);
        self
    }

    fn has_allow_list(&self) -> bool {
        !self.networks.is_empty() || !self.names.is_empty()
    }

    /// Whether an upstream address is allowed.
    ///
    /// # Errors
    /// [`ProxyError::Forbidden`] naming the address and the reason.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), ProxyError> {
        let ip = canonical(ip);
        let refuse = |why: &str| {
            Err(ProxyError::Forbidden {
                upstream: ip.to_string(),
                reason: why.to_owned(),
            })
        };
        if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
            return refuse("not a unicast address");
        }
        if self.networks.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        if is_metadata_ip(ip) || ip == IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)) {
            return refuse("a cloud metadata address");
        }
        if is_link_local(ip) && !self.allow_link_local {
            return refuse("link-local");
        }
        if ip.is_loopback() && !self.allow_loopback {
            return refuse("loopback (not allowed by this gateway's configuration)");
        }
        if self.has_allow_list() {
            return refuse("outside the allowed networks");
        }
        Ok(())
    }

    /// Whether a host name is allowed (its addresses are checked when it is resolved).
    ///
    /// # Errors
    /// [`ProxyError::Forbidden`] naming the host and the reason.
    pub fn check_name(&self, name: &str) -> Result<(), ProxyError> {
        let lower = name.trim_end_matches('.').to_ascii_lowercase();
        let listed = self.names.iter().any(|n| {
            let n = n.as_str();
            lower == n || lower.strip_suffix(n).is_some_and(|p| p.ends_with('.'))
        });
        if listed {
            return Ok(());
        }
        let refuse = |why: &str| {
            Err(ProxyError::Forbidden {
                upstream: lower.clone(),
                reason: why.to_owned(),
            })
        };
        if METADATA_NAMES.contains(&lower.as_str()) {
            return refuse("a cloud metadata name");
        }
        if (lower == "localhost" || lower.ends_with(".localhost")) && !self.allow_loopback {
            return refuse("loopback (not allowed by this gateway's configuration)");
        }
        if !self.names.is_empty() {
            return refuse("not an allowed name");
        }
        Ok(())
    }

    /// Whether an upstream endpoint is allowed.
    ///
    /// # Errors
    /// [`ProxyError::Forbidden`] naming the upstream and the reason.
    pub fn check_endpoint(&self, endpoint: &Endpoint) -> Result<(), ProxyError> {
        match endpoint.host() {
            Host::Ip(ip) => self.check_ip(*ip),
            Host::Name(n) => self.check_name(n.as_str()),
            _ => Ok(()),
        }
    }
}

/// Resolves upstream host names, dropping the addresses the policy refuses.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    policy: Option<Arc<SsrfPolicy>>,
}

impl GuardedResolver {
    pub(crate) fn new(policy: Option<Arc<SsrfPolicy>>) -> Self {
        Self { policy }
    }
}

type Addrs = std::vec::IntoIter<SocketAddr>;
type ResolveFuture = Pin<Box<dyn Future<Output = Result<Addrs, std::io::Error>> + Send>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = ResolveFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            if let Some(p) = &policy {
                p.check_name(&host).map_err(std::io::Error::other)?;
            }
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let found = addrs.len();
            let allowed: Vec<SocketAddr> = match &policy {
                Some(p) => addrs
                    .into_iter()
                    .filter(|a| p.check_ip(a.ip()).is_ok())
                    .collect(),
                None => addrs,
            };
            if allowed.is_empty() && found > 0 {
                return Err(std::io::Error::other(ProxyError::Forbidden {
                    upstream: host,
                    reason: "every address it resolves to is refused".to_owned(),
                }));
            }
            Ok(allowed.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_refuse_metadata_link_local_loopback() {
        let p = SsrfPolicy::default();
        for bad in [
            "169.254.169.254",
            "169.254.1.1",
            "fe80::1",
            "127.0.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "100.100.100.200",
            "fd00:ec2::254",
        ] {
            assert!(
                matches!(
                    p.check_ip(bad.parse().unwrap()),
                    Err(ProxyError::Forbidden { .. })
                ),
                "{bad}"
            );
        }
        for good in ["10.0.1.50", "192.168.1.2", "fd00::5", "8.8.8.8"] {
            p.check_ip(good.parse().unwrap())
                .unwrap_or_else(|e| panic!("{good} refused: {e}"));
        }
        p.check_name("metadata.google.internal").unwrap_err();
        p.check_name("Metadata.Google.Internal.").unwrap_err();
        p.check_name("localhost").unwrap_err();
        p.check_name("ollama.lab").unwrap();
    }

    #[test]
    fn allow_lists_restrict_and_override() {
        let p = SsrfPolicy::default()
            .allow_networks([
                "10.0.0.0/8".parse().unwrap(),
                "169.254.169.254".parse().unwrap(),
            ])
            .allow_names(["lab.internal".parse().unwrap()]);
        p.check_ip("10.1.1.1".parse().unwrap()).unwrap();
        p.check_ip("192.168.1.1".parse().unwrap()).unwrap_err();
        p.check_ip("169.254.169.254".parse().unwrap()).unwrap();
        p.check_name("gpu1.lab.internal").unwrap();
        p.check_name("evil.example").unwrap_err();
        p.check_name("xlab.internal").unwrap_err();
    }
}
