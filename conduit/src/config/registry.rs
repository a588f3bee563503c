//! `[registry]`: where the registry lives — the state directory's `services.json` (the
//! default, one gateway), or an etcd cluster shared by every gateway of a site.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[registry]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RegistrySettings {
    /// `etcd://HOST:PORT[,HOST:PORT…]/PREFIX`: keep the registry in etcd (several gateways,
    /// one site). Unset: the state directory's `services.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The CA bundle (PEM) that verifies etcd's certificates; set, the gateway speaks TLS
    /// to etcd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// This gateway's client certificate (PEM) for etcd's `--client-cert-auth`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

impl RegistrySettings {
    /// Whether the registry is shared (kept in etcd) rather than the state directory's.
    pub fn is_shared(&self) -> bool {
        self.url.is_some()
    }

    /// Checks the section; the error names the key.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a URL that is not `etcd://…`, TLS files without a URL,
    /// a certificate without its key, or a URL in a build without etcd support.
    pub fn validate(&self, origin: &str) -> Result<(), Box<ConfigError>> {
        let bad = |key: &str, problem: String| Box::new(ConfigError::invalid(origin, key, problem));
        if self.url.is_none() {
            if self.ca.is_some() || self.cert.is_some() || self.key.is_some() {
                return Err(bad(
                    "registry.ca",
                    "TLS files are set but registry.url is not: set the etcd URL, or remove them"
                        .to_owned(),
                ));
            }
            return Ok(());
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err(bad(
                "registry.cert",
                "a client certificate needs both registry.cert and registry.key".to_owned(),
            ));
        }
        if (self.cert.is_some() || self.key.is_some()) && self.ca.is_none() {
            return Err(bad(
                "registry.ca",
                "a client certificate is only sent over TLS: set registry.ca too".to_owned(),
            ));
        }
        self.etcd(origin).map(drop)
    }

    /// The etcd connection this section describes (`None`: the file registry).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `registry.url` when it does not parse.
    #[cfg(feature = "etcd")]
    pub fn etcd(
        &self,
        origin: &str,
    ) -> Result<Option<conduit_registry::etcd::EtcdConfig>, Box<ConfigError>> {
        use conduit_registry::etcd::{EtcdConfig, EtcdTls};
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let mut cfg = EtcdConfig::from_url(url)
            .map_err(|e| Box::new(ConfigError::invalid(origin, "registry.url", e.to_string())))?;
        if let Some(ca) = &self.ca {
            let mut tls = EtcdTls::new(ca);
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                tls = tls.with_client_cert(cert, key);
            }
            cfg = cfg.with_tls(tls);
        }
        Ok(Some(cfg))
    }

    /// Without etcd support built in, a URL is refused.
    #[cfg(not(feature = "etcd"))]
    fn etcd(&self, origin: &str) -> Result<Option<()>, Box<ConfigError>> {
        match &self.url {
            None => Ok(None),
            Some(_) => Err(Box::new(ConfigError::invalid(
                origin,
                "registry.url",
                "this build of conduit has no etcd support (the `etcd` feature)".to_owned(),
            ))),
        }
    }
}
