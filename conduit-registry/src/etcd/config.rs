//! Where the store is: [`EtcdConfig`], from `etcd://HOST:PORT[,HOST:PORT…]/PREFIX`.

use std::path::PathBuf;
use std::time::Duration;

/// Why an etcd registry cannot be set up from what it was given.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdConfigError {
    /// The URL is not `etcd://HOST:PORT[,HOST:PORT…]/PREFIX`.
    #[error("registry URL {url:?}: {problem} (expected etcd://HOST:PORT[,HOST:PORT…]/PREFIX)")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A TLS file cannot be read or holds nothing usable.
    #[error("registry TLS {what} {path}: {problem}", path = path.display())]
    Tls {
        /// `ca`, `cert` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// TLS towards etcd: the CA that signed its serving certificates and, where etcd asks for
/// one (`--client-cert-auth`), this gateway's client certificate and key. PEM files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdTls {
    /// The CA bundle that verifies etcd's certificates.
    pub ca: PathBuf,
    /// The client certificate chain, if etcd requires one.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key.
    pub key: Option<PathBuf>,
}

impl EtcdTls {
    /// TLS verified against `ca`, without a client certificate.
    pub fn new(ca: impl Into<PathBuf>) -> Self {
        Self {
            ca: ca.into(),
            cert: None,
            key: None,
        }
    }

    /// Presents `cert` with `key` to etcd.
    #[must_use]
    pub fn with_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert = Some(cert.into());
        self.key = Some(key.into());
        self
    }
}

/// How to reach the etcd cluster that holds the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// `HOST:PORT` of each member; requests go to the first that answers.
    pub endpoints: Vec<String>,
    /// The key prefix every key of this site lives under (no trailing `/`), e.g. `/conduit`.
    pub prefix: String,
    /// TLS; plain HTTP when `None` (loopback only, or a trusted network).
    pub tls: Option<EtcdTls>,
    /// How long one request may take before the member counts as unreachable.
    pub request_timeout: Duration,
    /// How often the store is probed while the change stream is quiet; a probe that fails
    /// marks the store unreachable.
    pub probe_interval: Duration,
}

impl EtcdConfig {
    /// Parses `etcd://HOST:PORT[,HOST:PORT…]/PREFIX` (the prefix defaults to `/conduit`).
    ///
    /// # Errors
    /// [`EtcdConfigError::Url`] naming what is wrong.
    pub fn from_url(url: &str) -> Result<Self, EtcdConfigError> {
        let bad = |problem: &str| EtcdConfigError::Url {
            url: url.to_owned(),
            problem: problem.to_owned(),
        };
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| bad("the scheme must be etcd://"))?;
        let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, "conduit"));
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return Err(bad("the key prefix is empty"));
        }
        if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the key prefix holds a space or control character"));
        }
        let mut endpoints = Vec::new();
        for h in hosts.split(',') {
            let (host, port) = h
                .rsplit_once(':')
                .ok_or_else(|| bad(&format!("{h:?} has no :PORT")))?;
            if host.is_empty() || host.contains(['/', '@', '?', '#']) {
                return Err(bad(&format!("{h:?} is not HOST:PORT")));
            }
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(&format!("{h:?} has no valid port")))?;
            endpoints.push(h.to_owned());
        }
        Ok(Self {
            endpoints,
            prefix: format!("/{}", prefix.trim_start_matches('/')),
            tls: None,
            request_timeout: Duration::from_secs(2),
            probe_interval: Duration::from_secs(1),
        })
    }

    /// Speaks TLS to etcd.
    #[must_use]
    pub fn with_tls(mut self, tls: EtcdTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The store as an operator writes it, for messages and status.
    pub fn display_url(&self) -> String {
        format!("etcd://{}{}", self.endpoints.join(","), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_say_why() {
        let c = EtcdConfig::from_url("etcd://10.0.0.1:2379,etcd2:2379/site/a/").unwrap();
        assert_eq!(c.endpoints, ["10.0.0.1:2379", "etcd2:2379"]);
        assert_eq!(c.prefix, "/site/a");
        assert_eq!(c.display_url(), "etcd://10.0.0.1:2379,etcd2:2379/site/a");
        assert_eq!(
            EtcdConfig::from_url("etcd://[::1]:2379").unwrap().prefix,
            "/conduit"
        );
        for (url, why) in [
            ("http://a:1/x", "scheme"),
            ("etcd://a/x", "no :PORT"),
            ("etcd://a:0/x", "valid port"),
            ("etcd://a:1//", "prefix is empty"),
            ("etcd://:1/x", "not HOST:PORT"),
        ] {
            let e = EtcdConfig::from_url(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}
