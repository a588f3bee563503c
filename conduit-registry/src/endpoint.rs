//! Upstream addresses: [`Endpoint`] = scheme + [`Host`] + port.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::name::{DomainName, NameError};

/// How the proxy speaks to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Scheme {
    /// Plain HTTP (the default: most upstreams sit on a private network behind the gateway).
    #[default]
    Http,
    /// HTTPS to the upstream.
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = EndpointError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Ok(Self::Http),
            "https" => Ok(Self::Https),
            _ => Err(EndpointError::Scheme {
                scheme: s.to_owned(),
            }),
        }
    }
}

/// The host part of an endpoint: an IP address or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Host {
    /// An IPv4 or IPv6 literal.
    Ip(IpAddr),
    /// A host name, resolved by whoever connects.
    Name(DomainName),
}

impl Host {
    /// The IP address, when the host is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Ip(ip) => Some(*ip),
            Self::Name(_) => None,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Name(n) => n.fmt(f),
        }
    }
}

impl FromStr for Host {
    type Err = EndpointError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bare = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        // `10.0.0.5.` would be a name (the trailing dot is dropped) that reads back as the
        // address: refused, so that an upstream is an address or a name, never first one
        // and then the other.
        if let Some(address) = bare
            .strip_suffix('.')
            .and_then(|b| b.parse::<IpAddr>().ok())
        {
            return Err(EndpointError::DottedAddress {
                input: s.to_owned(),
                address,
            });
        }
        if bare.is_empty() {
            return Err(EndpointError::MissingHost {
                input: s.to_owned(),
            });
        }
        DomainName::new(bare)
            .map(Self::Name)
            .map_err(EndpointError::Host)
    }
}

impl Serialize for Host {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Host {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why an endpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The scheme is neither `http` nor `https`.
    #[error("upstream scheme {scheme:?} is not supported (use http or https)")]
    Scheme {
        /// The rejected scheme.
        scheme: String,
    },
    /// No host before the port.
    #[error("upstream {input:?} has no host (expected HOST:PORT)")]
    MissingHost {
        /// The rejected input.
        input: String,
    },
    /// The host is neither an IP literal nor a valid DNS name.
    #[error("upstream host is invalid: {0}")]
    Host(#[source] NameError),
    /// An IP address with a trailing dot.
    #[error(
        "upstream host {input:?} is the address {address} with a trailing dot: write {address}"
    )]
    DottedAddress {
        /// The rejected host.
        input: String,
        /// The address it spells.
        address: IpAddr,
    },
    /// No port, or a port that is not 1..=65535.
    #[error("upstream {input:?} needs a port between 1 and 65535 (expected HOST:PORT)")]
    Port {
        /// The rejected input.
        input: String,
    },
    /// A path, query or user part, which an upstream address must not carry.
    #[error("upstream {input:?} must be [SCHEME://]HOST:PORT with no path")]
    Path {
        /// The rejected input.
        input: String,
    },
}

/// Where a service really runs: `[http|https://]HOST:PORT`.
///
/// The host is an IPv4 literal, a bracketed IPv6 literal or a DNS name; the port is
/// required (1-65535); the scheme defaults to `http`.
///
/// ```
/// use conduit_registry::{Endpoint, Scheme};
/// let e: Endpoint = "10.0.1.50:3000".parse()?;
/// assert_eq!((e.scheme(), e.port()), (Scheme::Http, 3000));
/// let e: Endpoint = "https://[fd00::5]:8443".parse()?;
/// assert_eq!(e.to_string(), "https://[fd00::5]:8443");
/// # Ok::<(), conduit_registry::EndpointError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawEndpoint")]
pub struct Endpoint {
    scheme: Scheme,
    host: Host,
    port: u16,
}

/// The serialized shape, checked by `TryFrom` so that port 0 never deserializes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    #[serde(default)]
    scheme: Scheme,
    host: Host,
    port: u16,
}

impl TryFrom<RawEndpoint> for Endpoint {
    type Error = EndpointError;
    fn try_from(r: RawEndpoint) -> Result<Self, Self::Error> {
        Self::new(r.scheme, r.host, r.port)
    }
}

impl Endpoint {
    /// An endpoint from its parts.
    ///
    /// # Errors
    /// [`EndpointError::Port`] for port 0.
    pub fn new(scheme: Scheme, host: Host, port: u16) -> Result<Self, EndpointError> {
        if port == 0 {
            return Err(EndpointError::Port {
                input: format!("{host}:0"),
            });
        }
        Ok(Self { scheme, host, port })
    }

    /// An `http` endpoint at a socket address.
    pub fn from_socket_addr(addr: SocketAddr) -> Result<Self, EndpointError> {
        Self::new(Scheme::Http, Host::Ip(addr.ip()), addr.port())
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address, when the host is an IP literal.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.host.ip().map(|ip| SocketAddr::new(ip, self.port))
    }

    /// `HOST:PORT` as an HTTP authority (IPv6 in brackets).
    pub fn authority(&self) -> String {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            h => format!("{h}:{}", self.port),
        }
    }

    /// This endpoint with another scheme.
    #[must_use]
    pub fn with_scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority())
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = match input.split_once("://") {
            Some((s, r)) => (s.parse()?, r),
            None => (Scheme::Http, input),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(EndpointError::Path {
                input: input.to_owned(),
            });
        }
        let port_err = || EndpointError::Port {
            input: input.to_owned(),
        };
        let (host, port) = if let Some(after) = rest.strip_prefix('[') {
            let (h, p) = after.split_once(']').ok_or_else(port_err)?;
            (h, p.strip_prefix(':').ok_or_else(port_err)?)
        } else {
            let (h, p) = rest.rsplit_once(':').ok_or_else(port_err)?;
            if h.contains(':') {
                // An IPv6 literal without brackets is ambiguous with a port.
                return Err(port_err());
            }
            (h, p)
        };
        if host.is_empty() {
            return Err(EndpointError::MissingHost {
                input: input.to_owned(),
            });
        }
        let port: u16 = p_parse(port).ok_or_else(port_err)?;
        Self::new(scheme, host.parse()?, port).map_err(|_| port_err())
    }
}

fn p_parse(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok().filter(|&n| n != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let e: Endpoint = "10.0.1.50:3000".parse().unwrap();
        assert_eq!(e.socket_addr(), Some("10.0.1.50:3000".parse().unwrap()));
        assert_eq!(e.to_string(), "http://10.0.1.50:3000");
        let e: Endpoint = "HTTPS://DB.Lan:5432/".parse().unwrap();
        assert_eq!(e.scheme(), Scheme::Https);
        assert_eq!(e.host(), &Host::Name("db.lan".parse().unwrap()));
        assert_eq!(e.authority(), "db.lan:5432");
        let e: Endpoint = "[::1]:8080".parse().unwrap();
        assert_eq!(e.authority(), "[::1]:8080");
    }

    #[test]
    fn an_address_with_a_trailing_dot_is_refused_not_taken_for_a_name() {
        // Found by the registry_input fuzz target: it parsed as the name 55.5.5.5, which
        // printed and parsed again is the address.
        assert_eq!(
            "55.5.5.5.:5".parse::<Endpoint>(),
            Err(EndpointError::DottedAddress {
                input: "55.5.5.5.".to_owned(),
                address: "55.5.5.5".parse().unwrap(),
            })
        );
        assert_eq!(
            "https://[::1.]:8443"
                .parse::<Endpoint>()
                .map_err(|e| e.to_string()),
            Err(
                "upstream host \"::1.\" is the address ::1 with a trailing dot: write ::1"
                    .to_owned()
            )
        );
        // A name with a trailing dot is still a name.
        let e: Endpoint = "db.lan.:5432".parse().unwrap();
        assert_eq!(e.host(), &Host::Name("db.lan".parse().unwrap()));
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [
            "10.0.1.50",
            ":80",
            "h:0",
            "h:65536",
            "h:-1",
            "h:8x",
            "::1:80",
            "h:80/api",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad} should be refused");
        }
        assert!(matches!(
            "ftp://h:21".parse::<Endpoint>(),
            Err(EndpointError::Scheme { .. })
        ));
        assert!(matches!(
            "bad_host:80".parse::<Endpoint>(),
            Err(EndpointError::Host(NameError::BadChar { ch: '_', .. }))
        ));
        assert!(matches!(
            "h:80/x".parse::<Endpoint>(),
            Err(EndpointError::Path { .. })
        ));
    }

    #[test]
    fn serde_round_trip() {
        let e: Endpoint = "https://[fd00::1]:443".parse().unwrap();
        let j = serde_json::to_string(&e).unwrap();
        assert_eq!(j, r#"{"scheme":"https","host":"fd00::1","port":443}"#);
        assert_eq!(serde_json::from_str::<Endpoint>(&j).unwrap(), e);
    }
}
